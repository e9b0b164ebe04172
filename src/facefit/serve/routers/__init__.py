"""One router per resource: system (health, model), faces (embed, verify, identify), persons."""
