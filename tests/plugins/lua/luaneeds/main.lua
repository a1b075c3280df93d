-- never loaded: its requirement is missing
return 1
