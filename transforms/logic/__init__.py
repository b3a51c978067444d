"""Pure functions behind the Beam transforms: no Beam import here, everything unit-testable."""
