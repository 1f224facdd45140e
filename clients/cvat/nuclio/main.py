"""ecsnet as a CVAT serverless detector (nuclio): CVAT posts {"image": base64, "threshold"}
and takes a list of mask shapes. The function calls ecsnet over HTTP at $ECSNET_URL; labels
are predicted by ecsnet's classifier and classes scoring under the threshold are left out."""
import base64
import json
import os

import ecsnet_common as ec


def init_context(context):
    context.user_data.url = os.environ.get("ECSNET_URL", "http://ecsnet:8080")
    context.logger.info(f"ecsnet function: calling {context.user_data.url}")


def handler(context, event):
    data = event.body
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    image = base64.b64decode(data["image"])
    threshold = data.get("threshold")
    answer = ec.cam(context.user_data.url, image, "mask,scores,polygons")
    results = []
    for k, name, score, bitmap in ec.regions(answer, float(threshold) if threshold else None):
        rings = ec.outer_rings(answer, k)
        results.append({"label": name, "type": "mask", "confidence": f"{score:.4f}",
                        "mask": ec.nuclio_mask(bitmap),
                        "points": max(rings, key=len) if rings else []})
    return context.Response(body=json.dumps(results), headers={},
                            content_type="application/json", status_code=200)
