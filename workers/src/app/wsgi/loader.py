# rgunicorn: load a WSGI callable the way gunicorn's util.import_app does. Embedded in the
# rgunicorn binary (workers/src/app/wsgi/import.rs) and run inside the worker's interpreter.
# AppImportError carries a one-line reason that needs no traceback; any other exception
# comes from the app's own code and is reported with its traceback.
import ast
import importlib
import os
import sys
import traceback


class AppImportError(Exception):
    pass


def import_app(module, names, call_args):
    """Import `module`, follow the attribute path `names`, and call it with the literal
    arguments written in `call_args` (a string, or None when the object is not called)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if module.endswith(".py") and os.path.exists(module):
            raise AppImportError(
                "Failed to find application, did you mean '%s:%s'?"
                % (module.rsplit(".", 1)[0], ".".join(names))
            ) from e
        raise
    app = mod
    for name in names:
        try:
            app = getattr(app, name)
        except AttributeError:
            raise AppImportError(
                "Failed to find attribute %r in %r." % (name, module)
            ) from None
    if call_args is not None:
        try:
            call = ast.parse("f(%s)" % call_args, mode="eval").body
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except (SyntaxError, ValueError):
            raise AppImportError(
                "Failed to parse arguments as literal values: %r" % call_args
            ) from None
        try:
            app = app(*args, **kwargs)
        except TypeError as e:
            if _called_with_wrong_args(app):
                raise AppImportError(
                    "".join(traceback.format_exception_only(TypeError, e)).strip()
                ) from None
            raise
    if app is None:
        raise AppImportError("Failed to find application object: %r" % ".".join(names))
    if not callable(app):
        raise AppImportError("Application object must be callable.")
    return app


def _called_with_wrong_args(f):
    """The TypeError came from calling `f` itself, not from inside it (gunicorn's check)."""
    tb = sys.exc_info()[2]
    try:
        while tb is not None:
            if tb.tb_frame.f_code is getattr(f, "__code__", None):
                return False
            tb = tb.tb_next
        return True
    finally:
        del tb


def module_files():
    """The source files of every loaded module, for --reload."""
    files = []
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if path:
            files.append(path)
    return files


def format_exception(exc, tb):
    """The traceback, without the leading frames of this loader and of importlib."""
    tb = tb or exc.__traceback__
    while tb is not None and _machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _machinery(filename):
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or filename.endswith(os.path.join("importlib", "__init__.py"))
    )
