"""Repository tools run by make targets and CI: container locks and the experiment report."""
