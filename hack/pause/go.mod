module zdr.local/pause

go 1.24
