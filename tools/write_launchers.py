"""Write fast launchers for berth's programs into a virtualenv's bin/ (run by `make install`).

pip's console-script wrapper starts the interpreter with site (and whatever .pth files the
environment has) and imports re; a container start pays for that every time. The launcher
runs the same entry point with `-S -E` and the installed package's directory on sys.path.

berth-runc and berthd put processes into containers, so they run the interpreter through
its read-only view under /run/berth/exe when it exists (berth/linux/exe.py: CVE-2019-5736);
when it does not yet, the program makes it and re-execs itself through it, once.
"""

import os
import sys

import berth
from berth.errors import BerthError
from berth.linux.exe import SAFE_DIR, _key, protected_path

LAUNCHERS = {"berth-runc": "berth.runtime_cli.main", "berth": "berth.cli.main", "berthd": "berth.daemon.main"}
PROTECTED = {"berth-runc", "berthd"}


def main():
    bindir = os.path.dirname(sys.executable)
    pkgdir = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    real = os.path.realpath(sys.executable)
    view = os.path.join(SAFE_DIR, _key(os.stat(real)), os.path.basename(real))
    try:
        view = protected_path(real)  # made now, so that the launchers take it from the first run
    except (OSError, BerthError) as e:
        print(f"note: no read-only view of {real} yet ({e}); berth-runc and berthd make it when they run")
    for name, module in LAUNCHERS.items():
        path = os.path.join(bindir, name)
        body = (f"import sys\n"
                f"sys.path.insert(0, {pkgdir!r})\n"
                f"from {module} import main\n"
                f"sys.exit(main())\n")
        if name in PROTECTED:
            script = os.path.join(bindir, f".{name}.py")
            _write(script, body, 0o644)
            _write(path, f"#!/bin/sh\n"
                         f"# {name}: {module} with -S -E, through the read-only view of the interpreter\n"
                         f"[ -s {view} ] && exec {view} -SE {script} \"$@\"\n"
                         f"exec {sys.executable} -SE {script} \"$@\"\n", 0o755)
        else:
            _write(path, f"#!{sys.executable} -SE\n" + body, 0o755)
        print(f"wrote {path}")


def _write(path, text, mode):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


if __name__ == "__main__":
    main()
