"""Engines: receipts scored against a program's tables, from and into customer state.

- ``_types.pxd``, ``_kernel.pyx``, ``_kernel.pyi``  the compiled kernel (Cython, ``nogil``) and its C types
- ``kernel.py``         the kernel's Python face: prepare a batch, score it (on threads, one
                        customer partition each), status and standing
- ``partition.py``      the one rule that splits customers into partitions scored apart
- ``reference.py``      the same rules written to be read: the executable specification
- ``return_arrays.py``  a batch's returns as the flat arrays the kernel re-scores them from
- ``engines.py``        the choice of engine (``compiled`` or ``reference``) and its result

Arrays in, arrays out: imports no SQLite, files, Flask or click, and nothing above ``program/``.
``reference.py`` shares no code with the kernel or the tables it checks.
"""
