"""ecsnet-client: the command line of the Python client."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from .client import Client, EcsnetError


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="ecsnet-client", description="Client of ecsnet-server")
    ap.add_argument("--url", default=os.environ.get("ECSNET_URL", "http://127.0.0.1:8080"),
                    help="the server (default $ECSNET_URL or http://127.0.0.1:8080)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cam", help="CAMs and masks of one image, written to --out")
    c.add_argument("image")
    c.add_argument("--labels", help="class names, comma separated (default: predicted)")
    c.add_argument("--outputs", help="POST /cam outputs (default: the server's)")
    c.add_argument("--out", required=True, help="directory for the files")
    sub.add_parser("models", help="the model registry as JSON")
    w = sub.add_parser("wait", help="follow an admin job with a progress bar")
    w.add_argument("job", type=int)
    a = ap.parse_args(argv)
    client = Client(a.url, admin_token=os.environ.get("ECSNET_ADMIN_TOKEN"))
    try:
        if a.cmd == "cam":
            res = client.cam(a.image, labels=a.labels, outputs=a.outputs)
            files = res.save(a.out)
            print("labels: " + " ".join(res.labels))
            for f in files:
                print(f)
        elif a.cmd == "models":
            print(json.dumps(client.models(), indent=1))
        elif a.cmd == "wait":
            j = client.wait(a.job)
            print(j.status)
            return 0 if j.status == "succeeded" else 1
    except (EcsnetError, OSError) as e:
        print(f"ecsnet-client: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
