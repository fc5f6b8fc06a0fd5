"""Packages are discovered, not listed: every folder with an `__init__.py` under the
code folders installs under the `autopilot` namespace (`runtime/health` →
`autopilot.runtime.health`), so a new sub-package cannot drop out of an install.
The data folders (agent specs, policies, knowledge) install as package data."""

from setuptools import find_packages, setup

CODE = ("runtime", "tools", "workflows", "evals")
DATA = ("agents", "policies", "knowledge")

packages = [f"autopilot.{top}" for top in CODE + DATA]
packages += [f"autopilot.{top}.{sub}" for top in CODE for sub in find_packages(where=top)]
setup(packages=packages, package_dir={f"autopilot.{top}": top for top in CODE + DATA})
