"""ecsnet as a CVAT serverless detector (nuclio): CVAT posts {"image": base64, "threshold"}
and takes a list of mask shapes. The function calls ecsnet over HTTP at $ECSNET_URL; labels
are predicted by ecsnet's classifier, labels scoring under the threshold are left out, and so
are labels outside function.yaml's spec: $ECSNET_LABELS (gen_function_yaml.py writes it) is
the label set the spec lists, "groups" (the ImageNet model's VOC groups) or "all"."""
import base64
import json
import os

import ecsnet_common as ec


def init_context(context):
    context.user_data.url = os.environ.get("ECSNET_URL", "http://ecsnet:8080")
    context.user_data.label_set = os.environ.get("ECSNET_LABELS", "auto")
    context.user_data.ids = {}  # NAME@VERSION -> the label ids of the spec
    context.logger.info(f"ecsnet function: calling {context.user_data.url}, "
                        f"labels {context.user_data.label_set}")


def spec_ids(context, answer):
    """The spec's label ids for the model that answered (read once per model version)."""
    u = context.user_data
    version = f"{answer['model']['name']}@{answer['model']['version']}"
    if version not in u.ids:
        labels, _ = ec.served_labels(u.url, u.label_set)
        u.ids[version] = {k for k, _ in labels}
    return u.ids[version]


def error(context, status, message):
    context.logger.error(message)
    return context.Response(body=json.dumps({"error": message}), headers={},
                            content_type="application/json", status_code=status)


def handler(context, event):
    data = event.body
    try:
        if isinstance(data, (bytes, str)):
            data = json.loads(data)
        image = base64.b64decode(data["image"], validate=True)
        threshold = float(data["threshold"]) if data.get("threshold") else None
    except (ValueError, KeyError, TypeError) as e:
        return error(context, 400, f"the body must be JSON with a base64 'image': {e}")
    try:
        answer = ec.cam(context.user_data.url, image, "mask,scores,polygons")
        ids = spec_ids(context, answer)
    except ec.EcsnetError as e:  # ecsnet's 4xx (a bad image) is the caller's; else a 502
        return error(context, e.status if e.status and 400 <= e.status < 500 else 502, str(e))
    results = []
    for k, name, score, bitmap in ec.regions(answer, threshold, ids):
        rings = ec.outer_rings(answer, k)
        results.append({"label": name, "type": "mask", "confidence": f"{score:.4f}",
                        "mask": ec.nuclio_mask(bitmap),
                        "points": max(rings, key=len) if rings else []})
    return context.Response(body=json.dumps(results), headers={},
                            content_type="application/json", status_code=200)
