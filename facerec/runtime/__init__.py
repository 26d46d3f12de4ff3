"""What every part of the library leans on: atomic files, logging, offline settings, hardware, process pools."""
