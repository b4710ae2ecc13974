"""What happens to sent email after the SMTP session: bounces, complaints and ESP events,
read from DSNs, ARF reports and webhooks into one `FeedbackEvent` type."""
