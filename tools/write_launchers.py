"""Write fast launchers for the runtime into a virtualenv's bin/ (run by `make install`).

pip's console-script wrapper starts the interpreter with site (and whatever .pth files the
environment has) and imports re; a container start pays for that every time. The launcher
runs the same entry point with `-S -E` and the installed package's directory on sys.path.
"""

import os
import sys

import berth

LAUNCHERS = {"berth-runc": "berth.runtime_cli.main", "berth": "berth.cli.main", "berthd": "berth.daemon.main"}


def main():
    bindir = os.path.dirname(sys.executable)
    pkgdir = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    for name, module in LAUNCHERS.items():
        path = os.path.join(bindir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"#!{sys.executable} -SE\n"
                    f"import sys\n"
                    f"sys.path.insert(0, {pkgdir!r})\n"
                    f"from {module} import main\n"
                    f"sys.exit(main())\n")
        os.chmod(tmp, 0o755)
        os.rename(tmp, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
