"""Feature learning with the NRE loss (Eq. 10) and temperature calibration."""
