"""Contacts: audience files, CRM imports and exports, vCard, neighbourhoods, engagement."""
