module wedgebench

go 1.27
