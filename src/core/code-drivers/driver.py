# SPDX-License-Identifier: Apache-2.0
#
# sbx code driver for Python 3.11+ (standard library only; protocol in docs/internals/code.md).
# sbxd runs it inside a sandbox as `python3 -u -c <this file>` with SBX_CODE_TOKEN set and talks
# to it over stdin/stdout/stderr only: one JSON request per line on stdin, the user's output on
# the real fds 1 and 2, and after each run an end marker on stderr then a result marker on stdout.
# Variables live in one __main__ namespace across runs. It must not leave names in that
# namespace, let user code read the requests (user stdin is /dev/null), leak the token to user
# code or its children, or show its own frames in tracebacks.


def _sbx_driver():
    import ast
    import builtins
    import json
    import linecache
    import os
    import signal
    import sys
    import traceback
    import types

    name = "SBX_CODE_TOKEN"
    limit = 15 << 20      # bytes of a marker's JSON we stay under (sbxd refuses > 16 MiB)
    cells_kept = 256      # source of the last runs kept in linecache for tracebacks
    co_coroutine = 0x80   # inspect.CO_COROUTINE, without importing inspect
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

    token = os.environ.pop(name, "")  # pop() also unsetenv()s: children do not inherit it

    def scrub_proc_environ():
        # /proc/self/environ shows the environment block the kernel set up at exec, which
        # unsetenv() does not touch: overwrite the variable there too (best effort).
        try:
            with open("/proc/self/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            start = int(fields[47])  # env_start, field 50 of proc(5)
            with open("/proc/self/environ", "rb") as f:
                env = f.read()
            key = name.encode() + b"="
            off = 0 if env.startswith(key) else env.find(b"\0" + key) + 1
            if off < 0 or not env[off:].startswith(key):
                return
            end = env.find(b"\0", off)
            end = len(env) if end < 0 else end
            fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
            try:
                os.pwrite(fd, b"\0" * (end - off), start + off)
            finally:
                os.close(fd)
        except (OSError, ValueError, IndexError):
            pass

    scrub_proc_environ()
    if len(token) != 32 or token.strip("0123456789abcdef"):
        os.write(2, b"sbx driver: SBX_CODE_TOKEN is missing or malformed\n")
        os._exit(2)

    # Private copies of the protocol fds (dup() is CLOEXEC here, PEP 446); the user's fd 0
    # becomes /dev/null so neither user code nor its children can read the requests.
    req_fd = os.dup(0)
    out_fd = os.dup(1)
    err_fd = os.dup(2)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    requests = os.fdopen(req_fd, "rb")
    marker = ("\x1eSBX" + token + " ").encode()
    del token

    user = types.ModuleType("__main__")
    user.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = user
    user_globals = user.__dict__
    dumps = json.dumps
    loads = json.loads
    cells = []
    loop = None

    def write_all(fd, data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def clean(s):
        # lone surrogates cannot be encoded; JSON consumers (jansson) refuse them too
        return s.encode("utf-8", "backslashreplace").decode("utf-8")

    def run_coroutine(coro):
        nonlocal loop
        import asyncio
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)

    def describe(e, filename):
        # Drop the driver's frames: start at the first frame of this run's code (none for a
        # SyntaxError, which then shows as the usual "File ..., line N" block).
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        e.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
        try:
            text = "".join(traceback.format_exception(type(e), e, tb))
        except Exception:
            text = ""
        try:
            value = str(e)
        except Exception:
            value = "<exception str() failed>"
        return {"name": clean(type(e).__name__), "value": clean(value), "traceback": clean(text)}

    def run(rid, code):
        filename = "<code-%d>" % rid
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        cells.append(filename)
        if len(cells) > cells_kept:
            linecache.cache.pop(cells.pop(0), None)
        try:
            tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST | flags)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            units = [compile(tree, filename, "exec", flags)]
            if last is not None:
                units.append(compile(last, filename, "eval", flags))
            value = None
            for unit in units:
                value = eval(unit, user_globals)
                if unit.co_flags & co_coroutine:
                    value = run_coroutine(value)
            output = None if value is None else clean(repr(value))
            return {"id": rid, "ok": True, "output": output, "error": None}
        except SystemExit:
            raise
        except BaseException as e:
            return {"id": rid, "ok": False, "output": None, "error": describe(e, filename)}

    def fit(result):
        # Keep the marker under the limit: cut the longest text field until it fits.
        while True:
            data = dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if len(data) <= limit:
                return data
            fields = [(result, "output")]
            if result["error"] is not None:
                fields += [(result["error"], "value"), (result["error"], "traceback")]
            obj, key = max(fields, key=lambda f: len(f[0][f[1]] or ""))
            text = obj[key]
            keep = min(len(text) - 1, int(len(text) * limit / len(data) * 0.9))
            obj[key] = text[:max(keep, 0)] + "\n[truncated by sbx]"

    def flush_user():
        for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                f.flush()
            except Exception:
                pass

    # SIGINT interrupts a run (KeyboardInterrupt, reported as its error) and is ignored while
    # idle; a handler the user code installed is put back for the next run.
    user_sigint = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        line = requests.readline()
        if not line:
            return
        try:
            req = loads(line)
            rid = req["id"]
            code = req["code"]
            if type(rid) is not int or rid < 0 or type(code) is not str:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            write_all(err_fd, b"sbx driver: malformed request\n")
            os._exit(2)
        signal.signal(signal.SIGINT, user_sigint)
        try:
            result = run(rid, code)
        finally:
            user_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
            flush_user()
        data = fit(result)
        write_all(err_fd, marker + b'{"id":%d}\n' % rid)
        write_all(out_fd, marker + data + b"\n")


_sbx_driver()
