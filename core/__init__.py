"""Fidelis core: program files, exact scoring engines, receipt I/O."""
