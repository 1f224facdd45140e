#!/usr/bin/env python3
"""Embeds the web page's files (server/ui/) in a C file for GET / and GET /ui/{asset}.

Build-time only, standard library. Each file becomes one row of srv_ui_files (srv-ui.h): its
name, media type and bytes. Only the extensions below are served; any other file in the folder
fails the build, so nothing lands in the binary by accident.

Usage: gen-ui.py out.c FILE...
"""
import os
import sys

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


def c_bytes(data):
    lines = []
    for i in range(0, len(data), 20):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 20]) + ",")
    return "\n".join(lines)


def main():
    out, files = sys.argv[1], sorted(sys.argv[2:], key=os.path.basename)
    rows, arrays = [], []
    for i, path in enumerate(files):
        name = os.path.basename(path)
        ext = os.path.splitext(name)[1]
        if ext not in TYPES:
            sys.exit(f"{path}: not served (only {', '.join(TYPES)})")
        with open(path, "rb") as f:
            data = f.read()
        arrays.append(f"static const unsigned char k_f{i}[] = {{\n{c_bytes(data)}\n  0x00\n}};")
        rows.append(f'  {{"{name}", "{TYPES[ext]}", k_f{i}, {len(data)}}},')
    with open(out, "w", encoding="utf-8") as f:
        f.write("/* Generated from server/ui/ by server/gen-ui.py; do not edit. */\n")
        f.write('#include "srv-ui.h"\n\n')
        f.write("\n".join(arrays) + "\n\n")
        f.write("const srv_ui_file srv_ui_files[] = {\n" + "\n".join(rows) + "\n};\n")
        f.write(f"const size_t srv_ui_n_files = {len(rows)};\n")


if __name__ == "__main__":
    main()
