"""The one way to fail an RPC: raise ApiError; the server interceptor turns it into a google.rpc.Status."""
from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
import grpc

# ErrorInfo.domain: the service that decided, `<service>.petplatform.dev` (the server interceptor sets
# it from the contract's package); the edge's own refusals are the edge's.
EDGE_DOMAIN = "edge.petplatform.dev"


def service_domain(full_method: str) -> str:
    """`/petplatform.pet.v1.PetService/GetPet` -> `pet.petplatform.dev`; health and reflection: the edge's
    convention does not apply, they are `grpc.io`'s."""
    package = full_method.lstrip("/").rsplit("/", 1)[0].rsplit(".", 1)[0]
    parts = package.split(".")
    return f"{parts[1]}.petplatform.dev" if parts[0] == "petplatform" and len(parts) > 2 else "grpc.io"


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, reason: str, *,
                 metadata: dict[str, str] | None = None, details: list | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.details = details or []

    def to_status(self, domain: str = EDGE_DOMAIN) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=domain, metadata=self.metadata)
        packed = []
        for d in [info, *self.details]:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


def invalid_argument(*violations: tuple[str, str], reason: str = "INVALID_ARGUMENT") -> ApiError:
    """violations: (field path, what is wrong)."""
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations])
    message = "; ".join(f"{f}: {d}" for f, d in violations) or "invalid argument"
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, reason, details=[bad])


def not_found(resource_type: str, name: str, *, why: str = "", reason: str = "NOT_FOUND",
              **metadata: object) -> ApiError:
    """why: a sentence after "not found" for a client that can act on it (with its own reason)."""
    return ApiError(grpc.StatusCode.NOT_FOUND, f"{name} not found{': ' + why if why else ''}", reason,
                    metadata={"resource": name, **{k: str(v) for k, v in metadata.items()}},
                    details=[error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)])


def already_exists(resource_type: str, name: str, message: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, message, "ALREADY_EXISTS", metadata={"resource": name},
                    details=[error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)])


def permission_denied(message: str = "permission denied", reason: str = "PERMISSION_DENIED") -> ApiError:
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, message, reason)


def unauthenticated(message: str = "authentication required", reason: str = "UNAUTHENTICATED") -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, reason)


def failed_precondition(message: str, reason: str, **metadata: object) -> ApiError:
    """metadata: the values the message is made of (a limit, a state), for clients to read."""
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message, reason,
                    metadata={k: str(v) for k, v in metadata.items()})


def resource_exhausted(message: str, reason: str, retry_after_seconds: float, **metadata: object) -> ApiError:
    seconds = max(1, int(retry_after_seconds + 0.999))
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds))
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, reason, details=[retry],
                    metadata={"retry_after_seconds": str(seconds), **{k: str(v) for k, v in metadata.items()}})


def unavailable(message: str, reason: str, retry_after_seconds: float = 1) -> ApiError:
    """A failure of ours that passes: the client may retry the same call after the delay."""
    seconds = max(1, int(retry_after_seconds + 0.999))
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds))
    return ApiError(grpc.StatusCode.UNAVAILABLE, message, reason, details=[retry],
                    metadata={"retry_after_seconds": str(seconds)})


def internal() -> ApiError:
    # Never carries the cause: that goes to the log with the request id.
    return ApiError(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")


def code_name(status: status_pb2.Status) -> str:
    return code_pb2.Code.Name(status.code)
