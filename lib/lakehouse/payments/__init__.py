"""The sample domain: card payments of an online marketplace (generator and transforms)."""
