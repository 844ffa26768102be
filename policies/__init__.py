"""Payer drug policies: the data (one YAML file each, shipped as package data)
and what it means, below everything that reads it.

- :mod:`policies.model` — the strict pydantic model of a policy file;
  :mod:`policies.consistency` — the rules across its fields;
  :mod:`policies.loader` reads YAML into the model and applies those rules,
  naming file and field in errors;
- :mod:`policies.generated` — the questions and sections generated from a
  policy's data, whose names a policy may read but not define;
- :mod:`policies.tree` — the tree of criteria one request is asked, with the
  generated criteria, written as FHIRPath (:mod:`policies.expressions`);
- :mod:`policies.index` — each question of a form by name: linkId, options,
  the sections that read it;
- :mod:`policies.names` — the ids, versions and canonical URLs of what is
  built from a policy.

The builder emits Questionnaires from these; the engine and the scorer read
answers through them.
"""
