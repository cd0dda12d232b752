"""dagu.web"""
