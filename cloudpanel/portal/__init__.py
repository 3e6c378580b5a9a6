"""The self-service portal for tenants: their projects' instances, within quota."""
