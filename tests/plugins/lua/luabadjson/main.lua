-- never loaded: the manifest is invalid
return 1
