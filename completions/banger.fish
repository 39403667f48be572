complete --keep-order --exclusive --command banger --arguments "(BANGER_COMPLETE=fish banger -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
