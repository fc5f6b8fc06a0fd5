"""Traces: one exporter chosen by settings (none, console, OTLP), a `span()` helper, and
the Temporal tracing interceptor so that a run's trace goes from the API request through
the workflow and its activities to the tool call.

The tracer every part uses is a switch over a provider held here, not the process-global
OpenTelemetry provider: that one can be set only once per process, and tests (and
`configure` with another exporter) need to swap it. With no provider ("none", the
default) spans are non-recording and nothing is exported or propagated."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.opentelemetry import workflow as otel_workflow

from autopilot.runtime.config import Settings

SERVICE = "cs-autopilot"
_NAME = "autopilot"
_provider: TracerProvider | None = None


class _SwitchTracer(trace.Tracer):
    """Delegates to the provider configured now (or a no-op one): the interceptor and
    the modules hold this tracer from import on, before any `configure`."""

    def _current(self) -> trace.Tracer:
        return _provider.get_tracer(_NAME) if _provider is not None else trace.NoOpTracer()

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:  # type: ignore[override]
        return self._current().start_span(*args, **kwargs)

    @contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:  # type: ignore[override]
        with self._current().start_as_current_span(*args, **kwargs) as span:
            yield span


TRACER = _SwitchTracer()


def _install(exporter: SpanExporter | None, *, batch: bool) -> None:
    global _provider
    if _provider is not None:
        _provider.shutdown()  # flushes what the previous exporter still holds
    if exporter is None:
        _provider = None
        return
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    _provider = provider


def configure(settings: Settings) -> None:
    """Install the exporter the settings name: `none` (default), `console` or `otlp`
    (gRPC to `otel_endpoint`, e.g. an OpenTelemetry Collector or Jaeger)."""
    kind = settings.otel_exporter
    if kind == "none":
        _install(None, batch=False)
    elif kind == "console":
        _install(ConsoleSpanExporter(), batch=True)
    elif kind == "otlp":
        # Imported here: the gRPC stack is loaded only by those who export over it.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        _install(OTLPSpanExporter(endpoint=settings.otel_endpoint or None), batch=True)
    else:  # pragma: no cover - the Literal admits no other value
        raise ValueError(f"otel_exporter: unknown exporter {kind!r}")


def in_memory() -> InMemorySpanExporter:
    """Record spans in memory, synchronously (for tests and `autopilot demo --trace`)."""
    exporter = InMemorySpanExporter()
    _install(exporter, batch=False)
    return exporter


def shutdown() -> None:
    """Flush and stop exporting (end of process, or the end of a test)."""
    _install(None, batch=False)


def _attrs(attrs: dict[str, object]) -> dict[str, AttributeValue]:
    """OpenTelemetry attributes: None dropped, sequences as lists of strings."""
    out: dict[str, AttributeValue] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, Sequence):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


@contextmanager
def span(name: str, **attrs: object) -> Iterator[trace.Span]:
    """A span around a block, child of the current one; attributes may be set later on
    the yielded span (an outcome known only at the end)."""
    with TRACER.start_as_current_span(name, attributes=_attrs(attrs)) as current:
        yield current


def workflow_span(name: str, **attrs: object) -> None:
    """A zero-length span from workflow code: through the Temporal interceptor, which
    emits it only when not replaying (deterministic); elsewhere (a node called directly)
    an ordinary span."""
    if workflow.in_workflow():
        otel_workflow.completed_span(name, attributes=_attrs(attrs))
        return
    with span(name, **attrs):
        pass


@contextmanager
def model_span(provider: str, model: str, **attrs: object) -> Iterator[trace.Span]:
    """A model (LLM) call, with the GenAI semantic-convention names, for whichever code
    calls a model: set `gen_ai.usage.input_tokens`/`output_tokens` on the span it yields."""
    with span(
        f"chat {model}", **{"gen_ai.system": provider, "gen_ai.request.model": model}, **attrs
    ) as current:
        yield current


def set_attrs(target: trace.Span, **attrs: object) -> None:
    target.set_attributes(_attrs(attrs))


def interceptor() -> TracingInterceptor:
    """Temporal's tracing interceptor on our tracer: client calls carry the current trace
    in a header; the worker opens workflow and activity spans under it. A run started
    with no trace (the dispatcher, the sweep, a schedule) gets its own root workflow span,
    so its nodes still hang under one trace."""
    return TracingInterceptor(TRACER, always_create_workflow_spans=True)


def has_tracing(client: Client) -> bool:
    interceptors = client.config(active_config=True)["interceptors"]
    return any(isinstance(i, TracingInterceptor) for i in interceptors)


def traced_client(client: Client) -> Client:
    """`client` whose calls propagate the trace (the same connection; one interceptor)."""
    if has_tracing(client):
        return client
    config = client.config()
    config["interceptors"] = [*config["interceptors"], interceptor()]
    return Client(**config)
