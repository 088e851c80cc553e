"""The HTTP layer: blueprints per resource, wire schemas, the error mapping."""
