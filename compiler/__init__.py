"""dagu.compiler"""
