"""Generated FHIR artifacts (Questionnaires, Libraries), committed and checked
against a fresh build by the drift test. Regenerate with ``dtr build``."""
