"""What the compiled modules use of Cython's pure-Python ``cython`` module, for a machine
without Cython: the same names, doing nothing.

The modules import it as ``try: import cython / except ImportError: from framework import
_cython_shim as cython``; when Cython compiles them, ``import cython`` is Cython's own, and
with Cython installed but the sources running as plain Python it is Cython's shim module.
"""
compiled = False


def _identity(x):
    return x


def _decorator_factory(*_args, **_kwargs):
    return _identity


# decorators that take arguments: @cython.locals(x=...), @cython.exceptval(...), ...
locals = exceptval = boundscheck = wraparound = cdivision = _decorator_factory
# bare decorators: @cython.cfunc, @cython.inline, ...
cfunc = ccall = inline = final = _identity


def cast(_type, value, typecheck=False):
    return value


def declare(_type=None, value=None, **_kwargs):
    return value


def address(value):
    return value


NULL = None

# C type names, only ever passed to cast()/declare() above
int = uint = long = ulong = longlong = ulonglong = double = bint = Py_ssize_t = None
uchar = p_uchar = p_char = None
