"""AVVP (LLP) with EAR: inputs from per-second features, the EAR model, label migration, pseudo-labels,
the three training stages and the AVVP metric."""
