"""Consent, preferences and data rights: consent records and the send decision (`model`),
double opt-in and preference links (`tokens`), the built-in confirmation email and pages
(`pages`), the person export format (`export`) and the erasure plan (`erasure`)."""
