"""Named CQL-style FHIRPath definitions generated from the policy data, and
the engine that evaluates them (through the one fhirpathpy gateway)."""
