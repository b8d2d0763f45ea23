"""Stream worker: telemetry in from Kafka, scores and alerts out; state in Redis; ONNX inference."""
