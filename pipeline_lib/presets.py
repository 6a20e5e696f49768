"""Column and stage presets for the standard exports of common CRMs.

A preset gives the canonical-name -> source-header mapping of a CRM's standard export
(and its default stages), so a user starts from a raw export plus a few lines of YAML.
Where a canonical column can come from several headers (export and import-template
labels differ, or a value is spread over several columns), the mapping lists them in
order: the first filled one wins, row by row.
"""

from __future__ import annotations

__all__ = ["PRESETS", "PRESET_STAGES", "HUBSPOT_DATE_ENTERED"]

#: Canonical column -> source header(s), per preset.
PRESETS: dict[str, dict[str, list[str]]] = {
    "salesforce": {
        "opportunity_id": ["Opportunity ID"],
        "name": ["Opportunity Name"],
        "account": ["Account Name"],
        "owner": ["Opportunity Owner"],
        "stage": ["Stage"],
        "amount": ["Amount"],
        "probability": ["Probability (%)"],
        "close_date": ["Close Date"],
        "created_date": ["Created Date"],
        "source": ["Lead Source"],
        "currency": ["Amount Currency", "Opportunity Currency"],
    },
    "salesforce_history": {
        "opportunity_id": ["Opportunity ID"],
        "stage": ["To Stage", "Stage"],
        "entered_at": ["Last Modified", "Last Modified Date", "Edit Date"],
        "amount": ["Amount"],
        "close_date": ["Close Date"],
    },
    "hubspot": {
        "opportunity_id": ["Record ID", "Deal ID"],
        "name": ["Deal Name"],
        "stage": ["Deal Stage"],
        "amount": ["Amount in company currency", "Amount"],
        "currency": ["Currency"],
        "close_date": ["Close Date"],
        "created_date": ["Create Date"],
        "owner": ["Deal owner", "Deal Owner"],
        "probability": ["Deal probability"],
        "lost_reason": ["Closed lost reason"],
        "source": ["Original Traffic Source", "Original Source Type"],
        "account": ["Associated Company", "Associated Company (Primary)"],
    },
    "pipedrive": {
        "opportunity_id": ["Deal - ID"],
        "name": ["Deal - Title"],
        "amount": ["Deal - Value"],
        "currency": ["Deal - Currency of Value", "Deal - Currency"],
        "probability": ["Deal - Probability"],
        "account": ["Deal - Organization"],
        "owner": ["Deal - Owner"],
        "stage": ["Deal - Stage", "Deal - Stage (pipeline)"],
        "status": ["Deal - Status"],
        "created_date": ["Deal - Deal created", "Deal - Creation date"],
        "close_date": [
            "Deal - Deal closed on",
            "Deal - Closed on",
            "Deal - Won time",
            "Deal - Lost time",
            "Deal - Expected close date",
        ],
        "lost_reason": ["Deal - Lost reason"],
        "source": ["Deal - Source channel", "Deal - Source origin"],
        "product": ["Deal - Product name"],
    },
}

#: Default stages per preset: open stages in pipeline order, then won and lost.
PRESET_STAGES: dict[str, dict[str, list[str]]] = {
    "salesforce": {
        "open": [
            "Prospecting",
            "Qualification",
            "Needs Analysis",
            "Value Proposition",
            "Id. Decision Makers",
            "Perception Analysis",
            "Proposal/Price Quote",
            "Negotiation/Review",
        ],
        "won": ["Closed Won"],
        "lost": ["Closed Lost"],
    },
    "hubspot": {
        "open": [
            "Appointment Scheduled",
            "Qualified To Buy",
            "Presentation Scheduled",
            "Decision Maker Bought-In",
            "Contract Sent",
        ],
        "won": ["Closed Won"],
        "lost": ["Closed Lost"],
    },
    "pipedrive": {
        # Pipedrive keeps won/lost in a separate status column; its default stages:
        "open": [
            "Qualified",
            "Contact Made",
            "Demo Scheduled",
            "Proposal Made",
            "Negotiations Started",
        ],
        "won": ["Won"],
        "lost": ["Lost"],
    },
}
PRESET_STAGES["salesforce_history"] = PRESET_STAGES["salesforce"]

#: HubSpot's wide stage history: one `Date entered "<Stage> (<Pipeline>)"` column per stage.
HUBSPOT_DATE_ENTERED = r'^Date entered "(?P<stage>.+?)(?: \((?P<pipeline>[^()]*)\))?"$'
