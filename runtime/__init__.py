"""dagu.runtime"""
