"""ecsnet-client: the Python client of ecsnet-server (api/openapi.yaml is the contract)."""
from .client import CamResult, Client, EcsnetError, Job

__all__ = ["CamResult", "Client", "EcsnetError", "Job"]
__version__ = "0.1.0"
