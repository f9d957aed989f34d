module example.com/fairloss-go

go 1.21
