-- never enabled: its migration is refused
return 1
