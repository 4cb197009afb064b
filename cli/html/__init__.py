"""Self-contained HTML reports: a scoring job's page and the model comparison, one file each
with every image and plot embedded (no network), rendered from what the database stores.

cxrq report html 7 -o job7.html
cxrq report html --models -o models.html
"""
