"""dagu.executors"""
