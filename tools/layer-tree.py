#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Make the include tree of one library: a directory holding symbolic links
to only the source folders and headers that library may include.

    layer-tree.py SRCROOT OUTDIR ENTRY...

Each ENTRY is a path relative to SRCROOT, linked at the same path under
OUTDIR:
  base             a folder, linked whole (its subfolders too)
  dataplane/*.h    the headers directly in a folder, each linked alone (for
                   a folder whose subfolders are other libraries)
  contract/x.h     one header

The meson build (top meson.build, "layer_includes") runs this at configure
time for each library and compiles the library with -I OUTDIR instead of the
repository root, so "#include "layer/file.h"" of a folder the library may
not use does not compile (docs/development.md, "Layers in the build").
OUTDIR is made anew each time: an entry taken out of the table goes.
"""
import glob
import os
import shutil
import sys


def link(src_root, out_dir, rel):
    src = os.path.join(src_root, rel)
    if not os.path.exists(src):
        sys.exit(f"layer-tree.py: {rel}: no such file or folder in {src_root}")
    dst = os.path.join(out_dir, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    # Relative, so that a source tree moved with its build directory inside
    # it keeps working.
    os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    src_root = os.path.abspath(argv[1])
    out_dir = argv[2]
    if os.path.lexists(out_dir):
        if os.path.islink(out_dir) or not os.path.isdir(out_dir):
            sys.exit(f"layer-tree.py: {out_dir} is not a directory this script made")
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    for entry in argv[3:]:
        if os.path.isabs(entry) or ".." in entry.split("/"):
            sys.exit(f"layer-tree.py: {entry}: give a path inside the source tree")
        if entry.endswith("/*.h"):
            folder = entry[: -len("/*.h")]
            headers = sorted(glob.glob(os.path.join(src_root, folder, "*.h")))
            if not headers:
                sys.exit(f"layer-tree.py: {entry}: no headers")
            for h in headers:
                link(src_root, out_dir, os.path.relpath(h, src_root))
        else:
            link(src_root, out_dir, entry)


if __name__ == "__main__":
    main(sys.argv)
