//! OpenTelemetry traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the tracing spans
//! (`request`, `execution`, `firing`, `delivery`) are exported over OTLP/HTTP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` by default, or
//! `http/json`), named by `OTEL_SERVICE_NAME` (default `fastlane`). The
//! other standard variables (`OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`…)
//! are read by the OpenTelemetry SDK.
//!
//! A trace crosses the queue: a message that starts an execution carries
//! the W3C `traceparent` of the span that queued it ([`traceparent`]), and
//! the worker makes the execution's span its child ([`continue_trace`]). So
//! a submission and its execution (and the execution's retries) are one
//! trace, whichever processes handle them.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The exporter of a process, flushed when dropped.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The tracer the `tracing-opentelemetry` layer records spans with.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("fastlane")
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        // Sends what is still batched; an unreachable collector must not
        // hold the exit up (the exporter's own timeout bounds it).
        let _ = self.provider.shutdown();
    }
}

/// The exporter the environment asks for; `None` when no OTLP endpoint is
/// set. An error names what is wrong with the settings.
pub fn from_env() -> Result<Option<Traces>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        match std::env::var(name).as_deref() {
            Err(_) | Ok("" | "http/protobuf" | "http/json") => {}
            Ok(other) => {
                return Err(format!(
                    "{name} is http/protobuf or http/json (fastlane exports over HTTP), not {other:?}"
                ));
            }
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|err| format!("cannot export traces over OTLP: {err}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("fastlane");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Ok(Some(Traces { provider }))
}

/// The W3C `traceparent` of the current span, when traces are exported.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the span `traceparent` names (from a queue
/// message); a malformed or absent one leaves `span` a root.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}
