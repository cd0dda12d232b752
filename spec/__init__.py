"""dagu.spec"""
