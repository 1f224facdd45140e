"""The client: one requests session per Client, every error as EcsnetError."""
from __future__ import annotations

import base64
import json
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import requests

ImageInput = Union[str, pathlib.Path, bytes]
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


class EcsnetError(Exception):
    """An error answer of the server ({"error": {"code", "message"}}) or a failed request."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class CamResult:
    """A POST /cam answer; the PNG outputs stay base64 in raw and decode on demand."""

    raw: Dict[str, Any]

    @property
    def width(self) -> int:
        return int(self.raw["width"])

    @property
    def height(self) -> int:
        return int(self.raw["height"])

    @property
    def labels(self) -> List[str]:
        return [lab["name"] for lab in self.raw["labels"]]

    @property
    def scores(self) -> Dict[str, float]:
        return {s["name"]: float(s["score"]) for s in self.raw.get("scores", [])}

    @property
    def coco(self) -> List[Dict[str, Any]]:
        return list(self.raw.get("coco", []))

    @property
    def polygons(self) -> Dict[str, Any]:
        return dict(self.raw.get("polygons", {}))

    def png(self, output: str, label: Optional[str] = None) -> bytes:
        """The PNG bytes of an image output (mask, cam_mask, ..., or cam/erased_cam of a
        label)."""
        if output in ("cam", "erased_cam"):
            for item in self.raw.get(output + "s", []):
                if label is None or item["name"] == label:
                    return base64.b64decode(item["png"])
            raise KeyError(f"no {output} for label {label!r}")
        if output not in self.raw:
            raise KeyError(f"the answer has no {output!r}")
        return base64.b64decode(self.raw[output])

    def save(self, out_dir: Union[str, pathlib.Path]) -> List[pathlib.Path]:
        """Writes every output as ecsnet cam names its files; returns the paths."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for key, prefix in (("cams", "cam_"), ("erased_cams", "erased_cam_")):
            for item in self.raw.get(key, []):
                p = out / f"{prefix}{item['name']}.png"
                p.write_bytes(base64.b64decode(item["png"]))
                written.append(p)
        for key in ("mask", "cam_mask", "ecs_mask", "head_mask", "erased_image", "overlay"):
            if key in self.raw:
                p = out / f"{key}.png"
                p.write_bytes(base64.b64decode(self.raw[key]))
                written.append(p)
        for key in ("coco", "polygons", "scores"):
            if key in self.raw:
                p = out / f"{key}.json"
                p.write_text(json.dumps(self.raw[key], indent=1))
                written.append(p)
        return written


@dataclass
class Job:
    """An admin job (GET /admin/jobs/{id})."""

    raw: Dict[str, Any] = field(repr=False)

    @property
    def id(self) -> int:
        return int(self.raw["id"])

    @property
    def status(self) -> str:
        return str(self.raw["status"])

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def progress(self) -> Optional[Dict[str, Any]]:
        return self.raw.get("progress")

    def __repr__(self) -> str:
        return f"Job(id={self.id}, status={self.status!r})"


def _image_bytes(image: ImageInput) -> bytes:
    if isinstance(image, bytes):
        return image
    return pathlib.Path(image).read_bytes()


def _csv(v: Union[None, str, Sequence[Any]]) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return ",".join(str(x) for x in v)


class Client:
    """ecsnet-server at url. admin_token: the bearer token of /admin (or ECSNET_ADMIN_TOKEN's
    value)."""

    def __init__(self, url: str = "http://127.0.0.1:8080", admin_token: Optional[str] = None,
                 timeout: float = 120.0, session: Optional[requests.Session] = None):
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self.timeout = timeout
        self.session = session or requests.Session()

    # ---- plumbing ---------------------------------------------------------------------
    def _request(self, method: str, path: str, admin: bool = False, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        if admin:
            if not self.admin_token:
                raise EcsnetError(0, "no_admin_token", "this Client has no admin_token")
            headers["Authorization"] = f"Bearer {self.admin_token}"
        kw.setdefault("timeout", self.timeout)
        try:
            r = self.session.request(method, self.url + path, headers=headers, **kw)
        except requests.RequestException as e:
            raise EcsnetError(0, "connection_failed", str(e)) from e
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise EcsnetError(r.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise EcsnetError(r.status_code, "http_error", r.text[:200]) from None
        return r

    # ---- inference --------------------------------------------------------------------
    def cam(self, image: ImageInput, labels: Union[None, str, Sequence[Union[str, int]]] = None,
            outputs: Union[None, str, Sequence[str]] = None,
            scales: Union[None, str, Sequence[float]] = None, flip: bool = False) -> CamResult:
        """POST /cam: CAMs, erased CAMs and masks of one image. labels None: predicted."""
        data = {k: v for k, v in (("labels", _csv(labels)), ("outputs", _csv(outputs)),
                                  ("scales", _csv(scales))) if v}
        if flip:
            data["flip"] = "true"
        r = self._request("POST", "/cam", files={"image": ("image", _image_bytes(image))},
                          data=data)
        return CamResult(r.json())

    def predict(self, image: ImageInput) -> Dict[str, float]:
        """The class scores of an image (POST /cam with outputs=scores)."""
        return self.cam(image, outputs="scores").scores

    def health(self) -> Dict[str, Any]:
        return self._request("GET", "/health/ready").json()

    # ---- the model registry -----------------------------------------------------------
    def models(self) -> List[Dict[str, Any]]:
        j = self._request("GET", "/v1/models").json()
        return list(j["models"] if isinstance(j, dict) else j)

    def model(self, name: str) -> Dict[str, Any]:
        return self._request("GET", f"/v1/models/{name}").json()

    def activate(self, name: str, version: int) -> Dict[str, Any]:
        return self._request("POST", f"/admin/models/{name}/versions/{version}/activate",
                             admin=True).json()

    def delete_version(self, name: str, version: int) -> Dict[str, Any]:
        return self._request("DELETE", f"/admin/models/{name}/versions/{version}",
                             admin=True).json()

    # ---- admin jobs -------------------------------------------------------------------
    def train(self, dataset: str, **params: Any) -> Job:
        """POST /admin/train: queues a training job (docs/admin.md lists params)."""
        return Job(self._request("POST", "/admin/train", admin=True,
                                 json={"dataset": dataset, **params}).json())

    def evaluate(self, dataset: str, **params: Any) -> Job:
        return Job(self._request("POST", "/admin/eval", admin=True,
                                 json={"dataset": dataset, **params}).json())

    def job(self, job_id: int) -> Job:
        return Job(self._request("GET", f"/admin/jobs/{job_id}", admin=True).json())

    def jobs(self) -> List[Job]:
        j = self._request("GET", "/admin/jobs", admin=True).json()
        return [Job(x) for x in (j["jobs"] if isinstance(j, dict) else j)]

    def cancel(self, job_id: int) -> Job:
        return Job(self._request("DELETE", f"/admin/jobs/{job_id}", admin=True).json())

    def resume(self, job_id: int) -> Job:
        return Job(self._request("POST", f"/admin/jobs/{job_id}/resume", admin=True).json())

    def datasets(self) -> List[Dict[str, Any]]:
        j = self._request("GET", "/admin/datasets", admin=True).json()
        return list(j["datasets"] if isinstance(j, dict) else j)

    def wait(self, job_id: int, progress: bool = True, poll_s: float = 0.5,
             timeout_s: Optional[float] = None,
             on_update: Optional[Callable[[Job], None]] = None) -> Job:
        """Polls a job until it has finished, drawing a progress bar on stderr. Ctrl-C
        cancels the job (and raises KeyboardInterrupt)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                j = self.job(job_id)
                if on_update:
                    on_update(j)
                if progress:
                    _draw(j)
                if j.finished:
                    if progress:
                        sys.stderr.write("\n")
                    return j
                if end is not None and time.monotonic() > end:
                    raise TimeoutError(f"job {job_id} still {j.status} after {timeout_s} s")
                time.sleep(poll_s)
        except KeyboardInterrupt:
            self.cancel(job_id)
            raise


def _draw(j: Job, width: int = 30) -> None:
    p = j.progress or {}
    step, total = int(p.get("step") or 0), int(p.get("total_steps") or 0)
    frac = step / total if total else 0.0
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    loss = p.get("loss")
    extra = f" loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    sys.stderr.write(f"\rjob {j.id} {j.status:<9} [{bar}] {step}/{total}{extra}   ")
    sys.stderr.flush()


def iter_images(paths: Iterable[Union[str, pathlib.Path]]) -> Iterable[pathlib.Path]:
    for p in paths:
        yield pathlib.Path(p)
