"""ecsnet as a cvat-sdk auto-annotation function (cvat_sdk.auto_annotation), for

    cvat-cli --server-host CVAT --auth USER task auto-annotate TASK_ID \
        --function-file clients/cvat/ecsnet_function.py -p url=str:http://ECSNET:8080

cvat-cli downloads the task's frames, calls detect() on each and uploads the shapes. The
function asks ecsnet for each frame's combined mask (labels predicted by ecsnet's classifier;
--conf-threshold drops labels scoring under it) and returns one mask shape per label, or its
outer polygons with --conv-mask-to-poly. Its labels are read from /v1/models when the function
is created: the served model's label groups where it has them (ecsnet-imagenet-lite0: the 20
PASCAL VOC names, cat, dog, ...), else its classes; `-p labels=str:all` offers every class and
group instead (each label's id is ecsnet's own: 1..K classes, K+1.. groups)."""
import io
import os
import sys

import cvat_sdk.auto_annotation as cvataa
from cvat_sdk.masks import encode_mask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ecsnet_common as ec  # noqa: E402


class EcsnetFunction:
    def __init__(self, url, labels="auto"):
        self.url = url
        spec, self.model_version = ec.served_labels(url, labels)
        self.ids = {k for k, _ in spec}
        self.spec = cvataa.DetectionFunctionSpec(
            labels=[cvataa.label_spec(name, k, type="mask") for k, name in spec])

    def detect(self, context, image):
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        poly = bool(getattr(context, "conv_mask_to_poly", False))
        answer = ec.cam(self.url, buf.getvalue(),
                        "mask,scores,polygons" if poly else "mask,scores")
        shapes = []
        for k, _name, _score, bitmap in ec.regions(answer, context.conf_threshold, self.ids):
            if poly:
                shapes += [cvataa.polygon(k, ring) for ring in ec.outer_rings(answer, k)]
            else:
                shapes.append(cvataa.mask(k, encode_mask(bitmap)))
        return shapes


def create(url=None, labels="auto"):
    """The function factory cvat-cli calls with -p url=str:http://... (default $ECSNET_URL) and
    -p labels=str:groups|all (default: groups where the model has them, else its classes)."""
    return EcsnetFunction(url or os.environ.get("ECSNET_URL", "http://127.0.0.1:8080"), labels)
