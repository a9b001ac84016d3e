// placeholder, replaced by the viewer issue
