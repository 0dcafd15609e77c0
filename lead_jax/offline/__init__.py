"""LEAD's offline stage: the warmup model, IFD, IDU_0, clusters, and the
baselines' offline scores."""
