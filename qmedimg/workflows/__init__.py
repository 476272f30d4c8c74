"""Workflows: what the ``qmedimg`` commands do — train, evaluate, noise study, predict/explain,
compare. Each asks its backend; none of them knows which kind it is."""
