"""InsightReader: a self-hosted server for an AI reading assistant."""
