"""The lead fields every lead has; scenarios may declare more in `lead_fields`."""

STANDARD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "company_size",
    "industry",
    "job_title",
    "country",
    "timezone",
    "source",
    "lifecycle_stage",
    "owner",
    "tags",
    "unsubscribed",
    "bounced",
    "created_at",
)
READ_ONLY_FIELDS = frozenset({"email", "created_at", "unsubscribed", "bounced", "lifecycle_stage"})
