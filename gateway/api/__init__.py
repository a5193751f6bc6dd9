"""HTTP blueprints: ``peer`` (node to node, PROTOCOL §7), ``agency``, ``health``."""
