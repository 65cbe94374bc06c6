"""Segments (标签分群): rules of tag and attribute conditions, evaluated by the database."""
