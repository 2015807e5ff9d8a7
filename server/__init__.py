"""Fidelis HTTP server (balance, history, accrual, redemption)."""
